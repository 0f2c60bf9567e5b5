# bench_cpu_vs_torch: the qalign side of bench/cpu_vs_torch.sh (LoRA step and evaluation forward vs
# PyTorch on the same machine, and an sgemm ceiling); run by hand, never by ctest.
add_executable(bench_cpu_vs_torch ${CMAKE_CURRENT_SOURCE_DIR}/cpu_vs_torch.c)
target_link_libraries(bench_cpu_vs_torch PRIVATE qa_model m)
