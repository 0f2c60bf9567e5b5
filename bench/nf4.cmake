# bench_nf4: NF4 vs BF16 base weights on the CPU in the same run (evaluation forward, training step, the frozen
# linears alone); bench/nf4_7b.sh: peak memory of a Mistral-7B-shaped load quantized to NF4 (run by hand).
add_executable(bench_nf4 ${CMAKE_CURRENT_SOURCE_DIR}/bench_nf4.c)
target_link_libraries(bench_nf4 PRIVATE qa_model m)
