# bench_checkpoint: save (build + write + fsync + verify + commit) and load (verify + read) of a LoRA
# checkpoint of a given size, against writing / reading the same bytes raw as the peer. Run by hand:
#   bench_checkpoint DIR [MiB of LoRA weights, default 64] [deflate level, default 0]
add_executable(bench_checkpoint ${CMAKE_CURRENT_SOURCE_DIR}/bench_checkpoint.c)
target_link_libraries(bench_checkpoint PRIVATE qa_io qa_common)
