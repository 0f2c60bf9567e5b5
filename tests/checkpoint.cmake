# Checkpoint store (io/checkpoint.h): round trip, retention, corrupt / truncated / tampered files,
# stale temporaries, disk full during a save (RLIMIT_FSIZE always; a small tmpfs when mount is allowed),
# the h5py view of the file and `qalign ckpt-info`.
qa_test_exe(test_checkpoint SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_checkpoint.c LIBS qa_io)

foreach(_g roundtrip retention)
  add_test(NAME checkpoint_${_g} COMMAND test_checkpoint ${_g})
  set_tests_properties(checkpoint_${_g} PROPERTIES LABELS "checkpoint;io")
endforeach()
foreach(_g corrupt badinput diskfull-rlimit)
  add_test(NAME checkpoint_${_g} COMMAND test_checkpoint ${_g})
  set_tests_properties(checkpoint_${_g} PROPERTIES LABELS "checkpoint;io;badinput")
endforeach()
# ENOSPC on a real (tmpfs) file system: needs CAP_SYS_ADMIN; skipped (exit 77) where mount is refused.
add_test(NAME checkpoint_diskfull-tmpfs COMMAND test_checkpoint diskfull-tmpfs)
set_tests_properties(checkpoint_diskfull-tmpfs PROPERTIES LABELS "checkpoint;io;badinput" SKIP_RETURN_CODE 77)

# A sample run directory shared by the h5py and CLI tests.
set(_ckpt_sample ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_sample_run)
add_test(NAME checkpoint_sample
         COMMAND sh -c "rm -rf '${_ckpt_sample}' && '$<TARGET_FILE:test_checkpoint>' sample '${_ckpt_sample}'")
set_tests_properties(checkpoint_sample PROPERTIES LABELS "checkpoint;io" FIXTURES_SETUP ckpt_sample)

# skipped (exit 77) without h5py / numpy
qa_python_test(checkpoint_h5py checkpoint_h5py.py ARGS ${_ckpt_sample} LABELS checkpoint io FIXTURES_REQUIRED ckpt_sample)

add_test(NAME checkpoint_cli COMMAND test_checkpoint cli $<TARGET_FILE:qalign> ${_ckpt_sample})
set_tests_properties(checkpoint_cli PROPERTIES LABELS "checkpoint;io;badinput" FIXTURES_REQUIRED ckpt_sample)
