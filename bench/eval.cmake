# bench_eval: evaluation items/s with the few-shot prefix KV cache on vs off (run by hand):
#   build/bench/bench_eval --threads 2 [--limit 8] [--langs en,zh,de,hi,sw]
# Without --model it writes a small random Mistral-shaped model with `qalign init-model`.
add_executable(bench_eval ${CMAKE_CURRENT_SOURCE_DIR}/bench_eval.c)
target_link_libraries(bench_eval PRIVATE qa_eval qa_model qa_io qa_dist m)
target_compile_definitions(bench_eval PRIVATE QA_BENCH_QALIGN="$<TARGET_FILE:qalign>" QA_BENCH_ASSETS="${QALIGN_ASSETS}")
add_dependencies(bench_eval qalign)
