# The op case list (tests/op_cases.c: every qa_ops op with its shapes and tolerances per precision) run on every
# backend by tests/test_ops.c, one test per mode:
#   ops_ref      the CPU backend vs double precision; backward ops vs finite differences; fused == unfused and
#                BF16 == its F32 values, bitwise (label model)
#   ops_threads  the CPU backend without a stream and on 1, 2, 3 threads: bitwise equal (label model)
#   ops_slots    every qa_ops slot that cpu and emu fill is called by a case (label model)
#   ops_emu      the emulated device vs the CPU backend, bitwise (label device)
#   cuda_ops     test_ops_cuda: cuda (bf16) and cuda-fp32 vs the CPU backend, within each case's tolerance (label
#                gpu). Built whenever the CUDA backend is (CI compiles it); without a usable GPU it exits 77 and
#                ctest reports it as skipped. bench/gpu/run_all.sh runs it on the GPU machine.
#   cudasim_ops, cudasim_ops_fp32  the same list on cuda and cuda-fp32 through the CUDA simulator, on every commit
#                (tests/cudasim.cmake, label cudasim)
set(_ops_src ${CMAKE_CURRENT_SOURCE_DIR}/test_ops.c ${CMAKE_CURRENT_SOURCE_DIR}/op_cases.c)
qa_test_exe(test_ops SOURCES ${_ops_src} LIBS qa_kernels m)
foreach(_m ref threads slots)
  add_test(NAME ops_${_m} COMMAND test_ops ${_m})
  set_tests_properties(ops_${_m} PROPERTIES LABELS "model;ops" TIMEOUT 120)
endforeach()
add_test(NAME ops_emu COMMAND test_ops backend emu)
set_tests_properties(ops_emu PROPERTIES LABELS "device;ops" TIMEOUT 120)

if(QALIGN_HAVE_CUDA)
  qa_test_exe(test_ops_cuda SOURCES ${_ops_src} LIBS qa_kernels m)
  target_compile_definitions(test_ops_cuda PRIVATE QT_OPS_CUDA=1)
  add_test(NAME cuda_ops COMMAND test_ops_cuda)
  set_tests_properties(cuda_ops PROPERTIES LABELS "gpu;ops" SKIP_RETURN_CODE 77)
endif()
