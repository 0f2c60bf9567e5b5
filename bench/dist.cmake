# dist/: time of the flat LoRA-gradient all-reduce (run under mpirun by hand; see docs/distributed.md)
add_executable(bench_dist_allreduce ${CMAKE_CURRENT_SOURCE_DIR}/dist_allreduce.c)
target_link_libraries(bench_dist_allreduce PRIVATE qa_dist qa_common)
