# Tokenizer (io/tokenizer.h, `qalign tokenize`): token-exact with Hugging Face `tokenizers`.
#   tokenizer_golden    every case of fixtures/tokenizers/{golden,vectors}.json, threads, vocab round trip
#   tokenizer_badinput  malformed tokenizer.json, invalid UTF-8, 10 MB lines (API + CLI), CLI input errors
#   tokenizer_diff      differential test against the `tokenizers` pip package (installs it if missing;
#                       skipped with exit 77 when that is impossible), derived layouts included
#   *_asan              the golden and bad-input tests again with AddressSanitizer + UBSan, built here from
#                       the tokenizer sources alone (a -DQALIGN_ASAN=ON build runs the plain tests instead)
# Tokenizer files come from ${QALIGN_ASSETS}/tokenizers (scripts/fetch-assets.sh).
set(QA_TOK_FIXTURES "${QA_FIXTURES_DEFAULT}/tokenizers")
set(QA_TOK_DIR "${QALIGN_ASSETS}/tokenizers")

qa_test_exe(test_tokenizer_golden SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_golden.c LIBS qa_io)
qa_test_exe(test_tokenizer_badinput SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_badinput.c LIBS qa_io)

add_test(NAME tokenizer_golden
         COMMAND test_tokenizer_golden ${QA_TOK_FIXTURES}/golden.json ${QA_TOK_FIXTURES}/vectors.json ${QA_TOK_DIR})
set_tests_properties(tokenizer_golden PROPERTIES LABELS "tokenizer;golden")
add_test(NAME tokenizer_badinput COMMAND test_tokenizer_badinput ${QA_TOK_DIR} $<TARGET_FILE:qalign>)
set_tests_properties(tokenizer_badinput PROPERTIES LABELS "tokenizer;badinput" TIMEOUT 600)

qa_python_test(tokenizer_diff tokenizer_diff.py
               ARGS --qalign $<TARGET_FILE:qalign> --tokenizers ${QA_TOK_DIR} --n 2500 --seed 20261126 --variants
                    --variant-n 400
               LABELS tokenizer differential TIMEOUT 900)

# ---- AddressSanitizer copies (only when the main build is not already sanitized) ----
if(NOT QALIGN_ASAN)
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=address,undefined")
  check_c_source_compiles("int main(void) { return 0; }" QA_TOK_HAVE_ASAN)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(QA_TOK_HAVE_ASAN)
    file(GLOB _qa_tok_src CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/io/tok_*.c)
    add_library(qa_tok_asan STATIC ${_qa_tok_src} ${CMAKE_SOURCE_DIR}/common/qa_err.c
                ${CMAKE_SOURCE_DIR}/common/qa_mem.c ${CMAKE_SOURCE_DIR}/common/qa_file.c)
    target_include_directories(qa_tok_asan PUBLIC ${CMAKE_SOURCE_DIR})
    target_compile_options(qa_tok_asan PUBLIC -fsanitize=address,undefined -fno-omit-frame-pointer
                           -fno-sanitize-recover=undefined)
    target_link_options(qa_tok_asan PUBLIC -fsanitize=address,undefined)
    target_link_libraries(qa_tok_asan PUBLIC PkgConfig::JANSSON PkgConfig::PCRE2 PkgConfig::UTF8PROC
                          Threads::Threads m)
    add_executable(qalign_tok_asan ${CMAKE_SOURCE_DIR}/launch/cmd_tokenize.c ${CMAKE_CURRENT_SOURCE_DIR}/tok_asan_main.c)
    target_link_libraries(qalign_tok_asan PRIVATE qa_tok_asan)
    qa_test_exe(test_tokenizer_golden_asan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_golden.c LIBS qa_tok_asan)
    qa_test_exe(test_tokenizer_badinput_asan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_badinput.c
                LIBS qa_tok_asan)
    add_test(NAME tokenizer_golden_asan
             COMMAND test_tokenizer_golden_asan ${QA_TOK_FIXTURES}/golden.json ${QA_TOK_FIXTURES}/vectors.json
                     ${QA_TOK_DIR})
    add_test(NAME tokenizer_badinput_asan
             COMMAND test_tokenizer_badinput_asan ${QA_TOK_DIR} $<TARGET_FILE:qalign_tok_asan>)
    set_tests_properties(tokenizer_golden_asan tokenizer_badinput_asan PROPERTIES
                         LABELS "tokenizer;asan;badinput" TIMEOUT 900
                         ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1")
  endif()
endif()
