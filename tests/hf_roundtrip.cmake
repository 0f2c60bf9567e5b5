# qalign's outputs loaded by transformers + PEFT on the CPU (tests/hf_roundtrip.py): forward --logits-out,
# AutoPeftModelForCausalLM from an exported adapter, merge --dtype f32. The oracle interpreter is
# $QALIGN_HF_PYTHON, else .venv-hf (scripts/setup.sh), else .venv; skipped (77) without torch/transformers/peft.
if(NOT QALIGN_ASAN)
  # looked up at every cmake run (not cached), so a .venv-hf made after the first configure is used
  if(DEFINED ENV{QALIGN_HF_PYTHON})
    set(QA_HF_PYTHON "$ENV{QALIGN_HF_PYTHON}")
  elseif(EXISTS ${CMAKE_SOURCE_DIR}/.venv-hf/bin/python3)
    set(QA_HF_PYTHON ${CMAKE_SOURCE_DIR}/.venv-hf/bin/python3)
  else()
    set(QA_HF_PYTHON "${QA_TEST_PYTHON}")
  endif()
  if(QA_HF_PYTHON)
    add_test(NAME hf_roundtrip COMMAND ${QA_HF_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/hf_roundtrip.py $<TARGET_FILE:qalign>)
    set_tests_properties(hf_roundtrip PROPERTIES LABELS "hf;peft" TIMEOUT 300 SKIP_RETURN_CODE 77
                         ENVIRONMENT "OPENBLAS_NUM_THREADS=1;HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1")
  endif()
endif()
