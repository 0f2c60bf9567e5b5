# Training data and configuration: io/yaml_config, train/train_config, train/template, train/data.
qa_test_exe(test_train_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_config.c LIBS qa_train qa_io)
add_test(NAME train_config COMMAND test_train_config)
set_tests_properties(train_config PROPERTIES LABELS "train;badinput")

qa_test_exe(test_traindata SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_traindata.c LIBS qa_train qa_io)
add_test(NAME traindata COMMAND test_traindata)
set_tests_properties(traindata PROPERTIES LABELS "train" ENVIRONMENT
  "QALIGN_ASSETS=${QALIGN_ASSETS};QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates;QA_TRAINDATA_GOLDEN=${CMAKE_CURRENT_SOURCE_DIR}/data/traindata_golden.json")

# qalign train end to end: the dry run, then one bad input per test.
qa_test_exe(test_train_cli SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_cli.c LIBS qa_common)
set(_train_cli_env "QALIGN_BIN=$<TARGET_FILE:qalign>;QALIGN_ASSETS=${QALIGN_ASSETS};QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates")
add_test(NAME train_cli_dry_run COMMAND test_train_cli dry_run)
set_tests_properties(train_cli_dry_run PROPERTIES LABELS "train" ENVIRONMENT "${_train_cli_env}")
foreach(_case missing_answer not_array jsonl empty_file empty_array bad_record missing_file template_missing_token
        template_special_in_text template_unknown config_unknown_key config_type world_not_divisible)
  add_test(NAME train_bad_${_case} COMMAND test_train_cli ${_case})
  set_tests_properties(train_bad_${_case} PROPERTIES LABELS "train;badinput" ENVIRONMENT "${_train_cli_env}")
endforeach()
