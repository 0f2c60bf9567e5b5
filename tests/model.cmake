# model/: the Hugging Face golden fixtures (label golden): every directory under $QALIGN_FIXTURES (default
# fixtures/hf), and the model's properties. The ops themselves: tests/ops.cmake.
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
