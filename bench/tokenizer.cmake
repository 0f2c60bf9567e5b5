# bench_tokenizer: MB/s per core of qa_tok_encode on every string of the 60 paper test files
# (assets/paper-data/{ap_emotion,snli,paws}/*_test.json) with the Qwen and the Mistral tokenizer, and
# Hugging Face `tokenizers` (bench_tokenizer_hf.py, one thread) on the same strings in the same run.
# Run by hand: bench_tokenizer [ASSETS_DIR] [REPEATS] [THREADS]
add_executable(bench_tokenizer ${CMAKE_CURRENT_SOURCE_DIR}/bench_tokenizer.c)
target_link_libraries(bench_tokenizer PRIVATE qa_tokenizer qa_common Threads::Threads)
target_compile_definitions(bench_tokenizer PRIVATE QA_ASSETS_DIR="${QALIGN_ASSETS}"
                           QA_BENCH_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
