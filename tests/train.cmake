# qalign train end to end on the fixture models with pre-tokenized data (tests/test_train_run.c):
# golden through the loop (label golden), resume, packing, PEFT export / init / merge, bad inputs
# (badinput) and real multi-process runs under mpirun (mpi). Every run uses train.threads=1.
qa_test_exe(test_train_run SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_run.c LIBS qa_model qa_io m)

set(_tr_env
  "QALIGN_BIN=$<TARGET_FILE:qalign>"
  "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf"
  "QA_MPIRUN=${QA_MPIRUN_STR}"
  ${QA_MPI_ENV}
  "OPENBLAS_NUM_THREADS=1")

function(_qa_train_test name labels timeout)
  add_test(NAME ${name} COMMAND test_train_run ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${timeout} ENVIRONMENT "${_tr_env}")
endfunction()

_qa_train_test(train_golden "train;golden" 120 golden)
_qa_train_test(train_adapter "train" 300 adapter)
_qa_train_test(train_validation "train;golden" 120 validation)
_qa_train_test(train_resume "train" 300 resume)
_qa_train_test(train_packing "train" 60 packing)
_qa_train_test(train_corrupt_ckpt "train;badinput" 120 corrupt)
_qa_train_test(train_disk_full "train;badinput" 180 diskfull)
_qa_train_test(train_bad_pretokenized "train;badinput" 120 baddata)
if(QA_MPIEXEC)
  _qa_train_test(train_ranks "train;mpi" 180 ranks)
  _qa_train_test(train_kill_rank1 "train;mpi;badinput" 180 kill 1)
  _qa_train_test(train_kill_rank0 "train;mpi;badinput" 180 kill 0)
  _qa_train_test(train_signal "train;mpi" 300 signal)
endif()

# train.fuse_micro_batches: a rank's micro-batches as one pass, each its own token mean == the separate micro-batches
# (padded, padding-free, 2 ranks under mpirun; resume exact); skipped, exit 77, without numpy / safetensors
add_test(NAME train_fused COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/train_fused.sh $<TARGET_FILE:qalign> ${QALIGN_ASSETS}
         "${QA_TEST_PYTHON}")
set_tests_properties(train_fused PROPERTIES LABELS "train;mpi" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates;QA_MPIRUN=${QA_MPIRUN_STR};${QA_MPI_ENV}")

# the multilingual evaluation during training (eval.every / eval.at_end)
add_test(NAME train_eval_hook COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/train_eval_hook.sh $<TARGET_FILE:qalign> ${QALIGN_ASSETS})
set_tests_properties(train_eval_hook PROPERTIES LABELS "train;eval" TIMEOUT 300
    ENVIRONMENT "QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates")

# the checkpoint of the lowest validation loss (train/best.c), export-peft --best, qalign loss-curve
qa_python_test(train_best train_best.py ARGS $<TARGET_FILE:qalign> ${QALIGN_ASSETS} ${CMAKE_CURRENT_BINARY_DIR}/train_best_tmp
               LABELS train TIMEOUT 300 ENVIRONMENT "QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates")
# data.padding_free: a micro-batch's rows end to end in one row == the padded rows (its comparisons in
# QA_TEST_PYTHON: skipped, exit 77, without numpy / safetensors or without a Python)
add_test(NAME train_padding_free COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/train_padding_free.sh $<TARGET_FILE:qalign>
         ${QALIGN_ASSETS} "${QA_TEST_PYTHON}")
set_tests_properties(train_padding_free PROPERTIES LABELS "train" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates")
