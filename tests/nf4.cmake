# NF4 4-bit base weights (label nf4): the format and every op with an NF4 weight bitwise equal to the op with the
# dequantized F32 weight (test_nf4 ops); and, where the Python oracles are installed (torch, bitsandbytes,
# transformers, peft in .venv; skipped with 77 otherwise), bit-exact quantization against bitsandbytes and the
# fixture models against transformers + bitsandbytes + PEFT.
qa_test_exe(test_nf4 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_nf4.c LIBS qa_kernels qa_io m)
add_test(NAME nf4_ops COMMAND test_nf4 ops)
set_tests_properties(nf4_ops PROPERTIES LABELS "nf4;model" TIMEOUT 300)
if(QA_PYTHON3)
  add_test(NAME nf4_bnb_bitexact COMMAND ${QA_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/nf4_bnb.py $<TARGET_FILE:test_nf4>
                                         ${QA_FIXTURES_DEFAULT}/hf)
  set_tests_properties(nf4_bnb_bitexact PROPERTIES LABELS "nf4" TIMEOUT 600 SKIP_RETURN_CODE 77)
  add_test(NAME nf4_oracle COMMAND ${QA_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/nf4_oracle.py $<TARGET_FILE:test_golden>
                                   ${QA_FIXTURES_DEFAULT}/hf)
  set_tests_properties(nf4_oracle PROPERTIES LABELS "nf4;golden" TIMEOUT 1200 SKIP_RETURN_CODE 77)
endif()
if(QA_PYTHON3)
  add_test(NAME nf4_badinput COMMAND ${QA_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/nf4_badinput.py $<TARGET_FILE:qalign>
                                     $<TARGET_FILE:test_nf4> ${QA_FIXTURES_DEFAULT}/hf)
  set_tests_properties(nf4_badinput PROPERTIES LABELS "nf4;badinput" TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
