# model/ and kernels/: op-level finite-difference checks (label model) and the Hugging Face
# golden fixtures (label golden): every directory under $QALIGN_FIXTURES (default fixtures/hf).
qa_test_exe(test_ops SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ops.c LIBS qa_kernels m)
add_test(NAME ops_gradcheck COMMAND test_ops)
set_tests_properties(ops_gradcheck PROPERTIES LABELS "model" ENVIRONMENT "OPENBLAS_NUM_THREADS=1")

qa_test_exe(test_golden SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_golden.c LIBS qa_model qa_io m)
add_test(NAME model_golden COMMAND test_golden)
set_tests_properties(model_golden PROPERTIES LABELS "golden;model"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf")

qa_test_exe(test_model SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model.c LIBS qa_model qa_io m)
add_test(NAME model_props COMMAND test_model)
set_tests_properties(model_props PROPERTIES LABELS "model;badinput"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf")

qa_test_exe(test_memory SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_memory.c LIBS qa_model qa_io m)
add_test(NAME model_memory COMMAND test_memory)
set_tests_properties(model_memory PROPERTIES LABELS "model"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;QALIGN_BIN=$<TARGET_FILE:qalign>")
