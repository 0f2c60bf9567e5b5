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

# the launcher, Python and Open MPI settings of tests/CMakeLists.txt (QA_MPIEXEC, QA_TEST_PYTHON, QA_MPI_ENV)
set(_hd_mpi "-")
if(QA_MPIEXEC)
  string(REPLACE ";" " " _hd_mpi "${QA_MPIEXEC};${QA_MPI_PREFLAGS}")
endif()
set(_hd_py "${QA_TEST_PYTHON}")
if(NOT _hd_py)
  set(_hd_py python3)
endif()
add_test(NAME hardening_cli
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/hardening_cli.sh $<TARGET_FILE:qalign> $<TARGET_FILE:test_hardening>
                 ${QA_FIXTURES_DEFAULT}/hf ${QALIGN_ASSETS} ${CMAKE_CURRENT_BINARY_DIR}/hardening_tmp "${_hd_mpi}" ${_hd_py})
set_tests_properties(hardening_cli PROPERTIES LABELS "hardening;badinput" TIMEOUT 900
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1;${QA_MPI_ENV}")
