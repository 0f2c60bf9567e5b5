# Training data and configuration: io/yaml_config, train/train_config, train/data, templates.
qa_test_exe(test_train_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_config.c LIBS qa_train qa_io)
add_test(NAME train_config COMMAND test_train_config)
set_tests_properties(train_config PROPERTIES LABELS "train;badinput")
