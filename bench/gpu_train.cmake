# bench_gpu_train: LoRA training / evaluation throughput of real model shapes with random BF16 weights
# built in backend memory (no files), beside the HF + PEFT anchor (run by hand: bench/gpu/run_all.sh).
add_executable(bench_gpu_train ${CMAKE_CURRENT_SOURCE_DIR}/bench_gpu_train.c)
target_link_libraries(bench_gpu_train PRIVATE qa_model m)
