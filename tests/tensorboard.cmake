# TensorBoard event files (io/tfevents.c) read back by TensorBoard's EventAccumulator (tests/tensorboard_check.py):
# training with log.tensorboard and qalign eval --tensorboard. Skipped (77) without tensorboard or the assets.
if(NOT QALIGN_ASAN)
  qa_python_test(tensorboard_roundtrip tensorboard_check.py ARGS $<TARGET_FILE:qalign> ${QALIGN_ASSETS}
                 LABELS io tensorboard TIMEOUT 300 ENVIRONMENT OPENBLAS_NUM_THREADS=1)
endif()
