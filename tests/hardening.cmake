# Hostile inputs and file systems (labels hardening, badinput: the sanitizer build runs them too).
#   hardening_<case>   tests/test_hardening.c: flipped bits in dumps, planted links at temporary names,
#                      stale temporaries, FIFOs as inputs, HDF5 external storage / links / virtual datasets,
#                      exp of NaN, misaligned safetensors data, overflowing sizes, checkpoint state out of
#                      range, PEFT export into a directory of other files, runaway normalizers, rope_scaling,
#                      non-finite weights and activations, data without a supervised token, packing vs loss
#   hardening_cli      tests/hardening_cli.sh: the same failure modes through the qalign command line
#                      (full disk, ulimit -f, init-model sizes, export-peft, outputs that are FIFOs, ranks
#                      with different configs, resume from a bad checkpoint, NaN adapters, arguments)
qa_test_exe(test_hardening SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_hardening.c
            LIBS qa_train qa_model qa_io PkgConfig::HDF5 PkgConfig::JANSSON m)
foreach(c dump-flips atomic ckpt-stale fifo h5-foreign expf misaligned overflow ckpt-meta peft-dir tok-norm rope
          nonfinite data-labels packing)
  add_test(NAME hardening_${c} COMMAND test_hardening ${c} ${QA_FIXTURES_DEFAULT}/hf)
  set_tests_properties(hardening_${c} PROPERTIES LABELS "hardening;badinput" TIMEOUT 300
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()

find_program(QA_HARD_PY NAMES python3 python)
set(_hd_mpi "-")
if(MPIEXEC_EXECUTABLE)
  set(_hd_mpi "${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe")
endif()
add_test(NAME hardening_cli
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/hardening_cli.sh $<TARGET_FILE:qalign> $<TARGET_FILE:test_hardening>
                 ${QA_FIXTURES_DEFAULT}/hf ${QALIGN_ASSETS} ${CMAKE_CURRENT_BINARY_DIR}/hardening_tmp "${_hd_mpi}")
set(_hd_env "OPENBLAS_NUM_THREADS=1" "OMPI_ALLOW_RUN_AS_ROOT=1" "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
            "OMPI_MCA_btl_vader_single_copy_mechanism=none" "OMPI_MCA_btl=self,vader,tcp")
if(QALIGN_ASAN)
  list(APPEND _hd_env "ASAN_OPTIONS=detect_leaks=0")   # Open MPI's dlclose()d components under mpirun
endif()
set_tests_properties(hardening_cli PROPERTIES LABELS "hardening;badinput" TIMEOUT 900 ENVIRONMENT "${_hd_env}")
