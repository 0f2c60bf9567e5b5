# TensorBoard event files (io/tfevents.c) read back by TensorBoard's EventAccumulator (tests/tensorboard_check.py):
# training with log.tensorboard and qalign eval --tensorboard. Skipped (77) without tensorboard or the assets.
if(NOT QALIGN_ASAN)
  find_program(QA_TB_PYTHON NAMES python3 PATHS ${CMAKE_SOURCE_DIR}/.venv/bin NO_DEFAULT_PATH)
  if(NOT QA_TB_PYTHON)
    find_program(QA_TB_PYTHON NAMES python3)
  endif()
  add_test(NAME tensorboard_roundtrip COMMAND ${QA_TB_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/tensorboard_check.py
           $<TARGET_FILE:qalign> ${QALIGN_ASSETS})
  set_tests_properties(tensorboard_roundtrip PROPERTIES LABELS "io;tensorboard" TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endif()
