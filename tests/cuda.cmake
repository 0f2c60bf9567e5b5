# The CUDA backend (label gpu): the Hugging Face golden fixtures on the GPU at bf16 tolerance (every op against the
# CPU backend: cuda_ops, tests/ops.cmake). Built whenever the CUDA backend is (CI compiles it); without a usable GPU
# it exits 77 and ctest reports it as skipped.
if(QALIGN_HAVE_CUDA)
  add_test(NAME cuda_golden COMMAND test_golden)
  set_tests_properties(cuda_golden PROPERTIES LABELS "gpu;golden" SKIP_RETURN_CODE 77
    ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;QALIGN_BACKEND=cuda")
endif()
