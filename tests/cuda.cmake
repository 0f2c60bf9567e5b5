# The CUDA backend (label gpu): every op against the CPU backend, and the Hugging Face golden
# fixtures on the GPU at bf16 tolerance. Built whenever the CUDA backend is (CI compiles them);
# without a usable GPU they exit 77 and ctest reports them as skipped.
if(QALIGN_HAVE_CUDA)
  qa_test_exe(test_ops_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ops_cuda.c LIBS qa_kernels m)
  add_test(NAME cuda_ops COMMAND test_ops_cuda)
  set_tests_properties(cuda_ops PROPERTIES LABELS "gpu" SKIP_RETURN_CODE 77)

  add_test(NAME cuda_golden COMMAND test_golden)
  set_tests_properties(cuda_golden PROPERTIES LABELS "gpu;golden" SKIP_RETURN_CODE 77
    ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;QALIGN_BACKEND=cuda")
endif()
