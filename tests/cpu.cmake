# kernels/cpu: the blocked GEMM against a double reference over every blocking edge, fused ops == unfused,
# and every op / a whole model bitwise equal on 1, 2, 3 threads (label model).
qa_test_exe(test_cpu_kernels SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cpu_kernels.c LIBS qa_model qa_io m)
add_test(NAME cpu_kernels COMMAND test_cpu_kernels)
set_tests_properties(cpu_kernels PROPERTIES LABELS "model"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf")
