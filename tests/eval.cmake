# eval/ (multilingual evaluation, `qalign eval`, `qalign label-tokens`) and model/infer.c.
#   eval_infer   prefix-cached inference vs the plain forward on every fixture model (+ LoRA)
qa_test_exe(test_eval_infer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_infer.c LIBS qa_model qa_io m)
add_test(NAME eval_infer COMMAND test_eval_infer)
set_tests_properties(eval_infer PROPERTIES LABELS "eval;model;badinput"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;OPENBLAS_NUM_THREADS=1")
