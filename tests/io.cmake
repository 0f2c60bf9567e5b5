# io/: safetensors, config.json, PEFT adapters, `qalign info` / `qalign init-model` (labels io, badinput).
# Fixture tests discover every directory under the golden fixture root (tests/CMakeLists.txt, docs/testing.md).
qa_test_exe(test_io SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io.c LIBS qa_model qa_io m)
foreach(c fixtures sharded roundtrip config peft_reject)
  add_test(NAME io_${c} COMMAND test_io ${c} ${QA_FIXTURES_DEFAULT}/hf)
  set_tests_properties(io_${c} PROPERTIES LABELS "io" TIMEOUT 120)
endforeach()

# one malformed checkpoint per test; each must fail with one line naming file and tensor/key
qa_test_exe(test_io_bad SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_bad.c LIBS qa_io m)
foreach(c truncated truncated_header header_past_eof header_too_big bad_json bad_utf8 not_object duplicate_name
          overlap out_of_file gap gap_at_start trailing_bytes dtype_shape_bytes shape_overflow negative_shape
          unknown_dtype config_shape config_dtype missing_tensor unexpected_tensor tied_missing_lm_head
          unknown_model_type unknown_rope unknown_rope_new hidden_act missing_key missing_shard shard_map_mismatch
          no_weights)
  add_test(NAME io_bad_${c} COMMAND test_io_bad ${c} $<TARGET_FILE:qalign>)
  set_tests_properties(io_bad_${c} PROPERTIES LABELS "io;badinput" TIMEOUT 60)
endforeach()

# Python reference implementation (pip safetensors) reads what we write, byte for byte; and the
# init-model output: loads in safetensors, `qalign info` reads it, deterministic per seed.
qa_python_test(io_python_compat io_compat.py ARGS $<TARGET_FILE:test_io_write> ${QA_FIXTURES_DEFAULT}/hf
               LABELS io TIMEOUT 120)
qa_python_test(io_init_model io_init_model.py ARGS $<TARGET_FILE:qalign> ${QA_FIXTURES_DEFAULT}/hf
               LABELS io TIMEOUT 300 ENVIRONMENT QALIGN_ASSETS=${QALIGN_ASSETS})
qa_test_exe(test_io_write SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_write.c LIBS qa_model qa_io m)
