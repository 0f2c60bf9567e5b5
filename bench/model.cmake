# bench_model: CPU forward / forward+backward vs the same matmuls as plain sgemm (run by hand).
add_executable(bench_model ${CMAKE_CURRENT_SOURCE_DIR}/bench_model.c)
target_link_libraries(bench_model PRIVATE qa_model m)
