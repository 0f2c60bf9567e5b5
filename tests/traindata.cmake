# Training data and configuration: io/yaml_config, train/train_config, train/template, train/data.
qa_test_exe(test_train_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_config.c LIBS qa_train qa_io)
add_test(NAME train_config COMMAND test_train_config)
set_tests_properties(train_config PROPERTIES LABELS "train;badinput")

qa_test_exe(test_traindata SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_traindata.c LIBS qa_train qa_io)
add_test(NAME traindata COMMAND test_traindata)
set_tests_properties(traindata PROPERTIES LABELS "train" ENVIRONMENT
  "QALIGN_ASSETS=${QALIGN_ASSETS};QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates;QA_TRAINDATA_GOLDEN=${CMAKE_CURRENT_SOURCE_DIR}/data/traindata_golden.json")
