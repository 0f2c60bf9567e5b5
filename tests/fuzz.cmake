# fuzz/: one libFuzzer target per parser. fuzz_build configures fuzz/ with clang in build/fuzz (skipped,
# exit 77, without clang's libFuzzer), fuzz_seeds writes the seed corpora from the real files (assets/, the
# shared fixtures, configs/, files qalign writes).
#   label fuzz       fuzz_replay_<target>: every seed and every input of fuzz/regress/<target>/ (the inputs
#                    that once crashed, leaked or hung) run once under ASan + UBSan, nothing mutated:
#                    seconds per target, part of the regular CI (scripts/test.sh); fuzz_build and
#                    fuzz_seeds carry this label and are pulled in by fuzz-run through their fixtures
#   label fuzz-run   fuzz_<target>: fuzzing for QALIGN_FUZZ_SECONDS each, registered only when it is > 0
#                    (the CI fuzz step: -DQALIGN_FUZZ_SECONDS=30, ctest -L fuzz-run; docs/fuzzing.md runs
#                    them for 10 minutes). A crash, a leak, a sanitizer report or a hang fails the test and
#                    leaves the input in build/fuzz/work_<target>/.
# Registered in the plain build only (the targets carry their own sanitizers).
if(NOT QALIGN_ASAN)
  set(QALIGN_FUZZ_SECONDS 0 CACHE STRING "seconds each fuzz target runs in ctest -L fuzz-run (0: those tests are not registered)")
  set(_fz_dir ${CMAKE_BINARY_DIR}/fuzz)
  set(_fz_run ${CMAKE_SOURCE_DIR}/fuzz/run.sh)
  add_test(NAME fuzz_build COMMAND bash ${_fz_run} build ${_fz_dir})
  set_tests_properties(fuzz_build PROPERTIES LABELS "fuzz" TIMEOUT 1200 SKIP_RETURN_CODE 77
                       FIXTURES_SETUP fuzz_bin)
  add_test(NAME fuzz_seeds COMMAND bash ${_fz_run} seeds ${_fz_dir} ${_fz_dir}/seeds ${QALIGN_ASSETS}
                                   ${QA_FIXTURES_DEFAULT}/hf ${CMAKE_SOURCE_DIR}/configs)
  set_tests_properties(fuzz_seeds PROPERTIES LABELS "fuzz" TIMEOUT 300 SKIP_RETURN_CODE 77
                       FIXTURES_REQUIRED fuzz_bin FIXTURES_SETUP fuzz_corpus)
  foreach(t safetensors hf_config tokenizer dataset yaml_config peft checkpoint actdump)
    add_test(NAME fuzz_replay_${t} COMMAND bash ${_fz_run} replay ${_fz_dir} ${t} ${_fz_dir}/seeds/${t}
                                           ${CMAKE_SOURCE_DIR}/fuzz/regress/${t})
    set_tests_properties(fuzz_replay_${t} PROPERTIES LABELS "fuzz" TIMEOUT 300 SKIP_RETURN_CODE 77
                         FIXTURES_REQUIRED fuzz_corpus)
    if(QALIGN_FUZZ_SECONDS GREATER 0)
      add_test(NAME fuzz_${t} COMMAND bash ${_fz_run} run ${_fz_dir} ${t} ${QALIGN_FUZZ_SECONDS} ${_fz_dir}/seeds/${t})
      set_tests_properties(fuzz_${t} PROPERTIES LABELS "fuzz-run" TIMEOUT 900 SKIP_RETURN_CODE 77
                           FIXTURES_REQUIRED fuzz_corpus)
    endif()
  endforeach()
endif()
