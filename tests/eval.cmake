# eval/ (multilingual evaluation, `qalign eval`, `qalign label-tokens`) and model/infer.c.
#   eval_infer          prefix-cached inference vs the plain forward on every fixture model (+ LoRA), the op vs naive
#   eval_models         (setup) tiny random Mistral and Qwen2 models with the real tokenizers, in the build dir
#   eval_prompts        prompts vs hand-checked strings (13 trailing spaces, full-width colons, demos = records 99/20)
#   eval_gold           corrected vs paper gold; the paper's SNLI ja/bn/no defects
#   eval_run            batched vs one by one vs uncached vs full-vocab: same predictions, masses to 1e-5
#   eval_adapter        PEFT directory, checkpoint file and run directory give the same evaluation
#   eval_cli            qalign eval: results.json / results.md / predictions.jsonl, --dump-prompts, --help
#   eval_badinput       missing files, records missing fields, label words without tokens, usage errors
#   eval_label_tokens   label-token sets vs a Python reference on HF `tokenizers` (skipped when it is missing)
#   eval_mpi_np2        mpirun -np 2 gives byte-identical predictions to one process
#   eval_scoring_*      the scoring modes (english-labels, target-labels with Thai's two steps, the irrelevant-label
#                       control): hand-checked prompts, scored words and ids, correctness rules, the CLI
#   eval_scoring_hf     the three emotion modes vs a re-implementation of the paper's scripts: transformers when
#                       torch is installed, else a NumPy decoder + HF `tokenizers` (skipped without numpy/tokenizers)
set(QA_EVAL_DATA "${QALIGN_ASSETS}/paper-data")
set(QA_EVAL_TOK "${QALIGN_ASSETS}/tokenizers")
set(QA_EVAL_TMP "${CMAKE_CURRENT_BINARY_DIR}/eval_tmp")

qa_test_exe(test_eval_infer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_infer.c LIBS qa_model qa_io m)
add_test(NAME eval_infer COMMAND test_eval_infer)
set_tests_properties(eval_infer PROPERTIES LABELS "eval;model;badinput"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;OPENBLAS_NUM_THREADS=1")

add_test(NAME eval_models COMMAND sh -c
  "mkdir -p '${QA_EVAL_TMP}' && \
   '$<TARGET_FILE:qalign>' init-model --arch mistral --tokenizer '${QA_EVAL_TOK}/mistral-7b-v0.1.tokenizer.json' \
     --seed 1 --force --out '${QA_EVAL_TMP}/tiny-mistral' && \
   '$<TARGET_FILE:qalign>' init-model --arch qwen2 --tokenizer '${QA_EVAL_TOK}/qwen1_5-qwen2.tokenizer.json' \
     --seed 2 --force --out '${QA_EVAL_TMP}/tiny-qwen2'")
set_tests_properties(eval_models PROPERTIES LABELS "eval" FIXTURES_SETUP eval_models)

qa_test_exe(test_eval SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_eval.c LIBS qa_eval qa_model qa_io qa_dist m)
foreach(part prompts gold run adapter cli badinput)
  add_test(NAME eval_${part} COMMAND test_eval ${QA_EVAL_DATA} ${QA_EVAL_TOK} ${QA_EVAL_TMP}/tiny-mistral
           ${QA_EVAL_TMP}/tiny-qwen2 $<TARGET_FILE:qalign> ${QA_EVAL_TMP} ${part})
  set_tests_properties(eval_${part} PROPERTIES LABELS "eval" TIMEOUT 300 FIXTURES_REQUIRED eval_models
    ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()
set_tests_properties(eval_badinput PROPERTIES LABELS "eval;badinput")

qa_python_test(eval_label_tokens eval_label_tokens.py
               ARGS --qalign $<TARGET_FILE:qalign> --tasks-json ${QA_EVAL_DATA}/tasks.json
                    --tokenizer ${QA_EVAL_TOK}/mistral-7b-v0.1.tokenizer.json
                    --tokenizer ${QA_EVAL_TOK}/qwen1_5-qwen2.tokenizer.json
                    --tokenizer ${QA_EVAL_TOK}/llama2.reconstructed.tokenizer.json
                    --tokenizer ${QA_EVAL_TOK}/qwen3.tokenizer.json
               LABELS eval tokenizer TIMEOUT 300)

# two ranks vs one: the plan fixes the batches, so predictions are byte-identical
if(QA_MPIEXEC)
  set(_eargs "--model '${QA_EVAL_TMP}/tiny-mistral' --data '${QA_EVAL_DATA}' --tasks snli,paws,emotion --langs en,ja,bn,no --limit 9 --gold paper")
  add_test(NAME eval_mpi_np2 COMMAND sh -c
    "set -e; cd '${QA_EVAL_TMP}'; rm -rf np1 np2; \
     '$<TARGET_FILE:qalign>' eval ${_eargs} --out np1; \
     ${QA_MPIRUN_STR} 2 '$<TARGET_FILE:qalign>' eval ${_eargs} --out np2; \
     cmp np1/predictions.jsonl np2/predictions.jsonl; \
     test \"$(wc -l < np2/predictions.jsonl)\" -eq 108; \
     grep -v -E 'seconds|items_per_s|created_utc|world_size|tokens_computed' np1/results.json > np1/r.txt; \
     grep -v -E 'seconds|items_per_s|created_utc|world_size|tokens_computed' np2/results.json > np2/r.txt; \
     cmp np1/r.txt np2/r.txt; grep -q '\"world_size\": 2' np2/results.json; echo 'np=1 and np=2 agree'")
  set_tests_properties(eval_mpi_np2 PROPERTIES LABELS "eval;mpi" TIMEOUT 300 FIXTURES_REQUIRED eval_models
    ENVIRONMENT "${QA_MPI_ENV};OPENBLAS_NUM_THREADS=1")
endif()

# scoring modes (eval/scoring.c)
qa_test_exe(test_eval_scoring SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_scoring.c LIBS qa_eval qa_model qa_io m)
foreach(part prompts words correct cli)
  add_test(NAME eval_scoring_${part} COMMAND test_eval_scoring ${QA_EVAL_DATA} ${QA_EVAL_TOK}
           ${QA_EVAL_TMP}/tiny-mistral $<TARGET_FILE:qalign> ${QA_EVAL_TMP} ${part})
  set_tests_properties(eval_scoring_${part} PROPERTIES LABELS "eval" TIMEOUT 300 FIXTURES_REQUIRED eval_models
    ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()
set_tests_properties(eval_scoring_correct PROPERTIES LABELS "eval;badinput")
qa_python_test(eval_scoring_hf eval_scoring_hf.py
               ARGS --qalign $<TARGET_FILE:qalign> --data ${QA_EVAL_DATA} --model ${QA_EVAL_TMP}/tiny-mistral
                    --model ${QA_EVAL_TMP}/tiny-qwen2 --out ${QA_EVAL_TMP}/scoring_hf --limit 2
               LABELS eval TIMEOUT 600 FIXTURES_REQUIRED eval_models
               ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMP_NUM_THREADS=1")
