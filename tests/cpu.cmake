# kernels/cpu: the blocked GEMM (called directly: no qa_ops slot) against a double reference over every blocking
# edge, a product's rows independent of each other, and a whole model bitwise equal on 1 and 3 threads (label
# model). Each op on 1, 2, 3 threads: ops_threads (tests/ops.cmake).
qa_test_exe(test_cpu_kernels SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cpu_kernels.c LIBS qa_model qa_io m)
add_test(NAME cpu_kernels COMMAND test_cpu_kernels)
set_tests_properties(cpu_kernels PROPERTIES LABELS "model"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf")
