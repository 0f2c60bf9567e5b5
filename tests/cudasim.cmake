# The CUDA backend's own code on the CPU (kernels/cuda/sim, label cudasim): kernels/cuda/*.cu translated to
# C++ and run with real block/warp semantics and a CPU cuBLAS (docs/cuda.md, "The CUDA simulator"). Test binaries link
# libqa_cudasim and get it as the backends "cuda" and "cuda-fp32"; nothing here needs nvcc or a GPU, and nothing
# skips (cudasim_train only without h5py and numpy).
if(TARGET qa_cudasim)
  # the simulator itself: tests/test_cudasim.cu through translate.py, against the runtime library
  qa_cuda_translate(_cudasim_test ${CMAKE_CURRENT_SOURCE_DIR}/test_cudasim.cu)
  add_executable(test_cudasim ${_cudasim_test} ${CMAKE_CURRENT_SOURCE_DIR}/testutil.c)
  target_include_directories(test_cudasim PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(test_cudasim PRIVATE qa_cudasim_rt m)
  add_test(NAME cudasim_self COMMAND test_cudasim)
  set_tests_properties(cudasim_self PROPERTIES LABELS "cudasim" TIMEOUT 120)

  # the op case list (tests/op_cases.c) by test_ops: cuda within each case's bf16 tolerance, cuda-fp32 within its
  # fp32 one, the filled slots all called (a backend that cannot open fails here: 77 is not a skip)
  qa_test_exe(test_ops_cudasim SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ops.c ${CMAKE_CURRENT_SOURCE_DIR}/op_cases.c
              LIBS qa_kernels m)
  qa_link_cudasim(test_ops_cudasim)
  add_test(NAME cudasim_ops COMMAND test_ops_cudasim backend cuda)
  add_test(NAME cudasim_ops_fp32 COMMAND test_ops_cudasim backend cuda-fp32)
  set_tests_properties(cudasim_ops cudasim_ops_fp32 PROPERTIES LABELS "cudasim;ops" TIMEOUT 300)

  qa_test_exe(test_golden_cudasim SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_golden.c LIBS qa_model qa_io m)
  qa_link_cudasim(test_golden_cudasim)
  add_test(NAME cudasim_golden COMMAND test_golden_cudasim)
  set_tests_properties(cudasim_golden PROPERTIES LABELS "cudasim;golden" TIMEOUT 300
    ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;QALIGN_BACKEND=cuda;QT_VERBOSE=1")
  # the verification mode: fp32 GEMMs and attention operands hold the CPU's 1e-4
  add_test(NAME cudasim_golden_fp32 COMMAND test_golden_cudasim)
  set_tests_properties(cudasim_golden_fp32 PROPERTIES LABELS "cudasim;golden" TIMEOUT 300
    ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;QALIGN_BACKEND=cuda-fp32")

  # qalign itself with the simulator as its cuda device: training, resume and evaluation on model.device=cuda
  # against the CPU backend (tests/cudasim_train.sh)
  add_executable(qalign_cudasim)
  target_link_libraries(qalign_cudasim PRIVATE qa_launch)
  qa_link_cudasim(qalign_cudasim)
  add_test(NAME cudasim_train COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cudasim_train.sh $<TARGET_FILE:qalign_cudasim>
           ${QALIGN_ASSETS} "${QA_TEST_PYTHON}" ${QA_FIXTURES_DEFAULT}/hf)
  set_tests_properties(cudasim_train PROPERTIES LABELS "cudasim;train;eval" TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates;OPENBLAS_NUM_THREADS=1")
endif()
