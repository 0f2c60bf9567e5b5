add_test(NAME eval_compare COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/eval_compare.sh $<TARGET_FILE:qalign>)
set_tests_properties(eval_compare PROPERTIES LABELS "eval;badinput")
