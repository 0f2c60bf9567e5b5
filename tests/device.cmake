# The device code paths on the emulated device (kernels/emu, label device): its discipline (host access
# faults, host pointers refused), the golden fixtures through it at the CPU's tolerance, and qalign train /
# eval / dumps / lens / resume / np=2 on it, bit for bit against the CPU backend (tests/device_emu.sh).
qa_test_exe(test_emu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_emu.c LIBS qa_kernels m)
add_test(NAME device_emu_discipline COMMAND test_emu)
set_tests_properties(device_emu_discipline PROPERTIES LABELS "device" TIMEOUT 60)

add_test(NAME device_emu_golden COMMAND test_golden)
set_tests_properties(device_emu_golden PROPERTIES LABELS "device;golden" TIMEOUT 300
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;QALIGN_BACKEND=emu;OPENBLAS_NUM_THREADS=1")

set(_dev_mpi)
if(QA_MPIEXEC)
  set(_dev_mpi ${QA_MPIRUN})
endif()
add_test(NAME device_emu_e2e COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/device_emu.sh $<TARGET_FILE:qalign> ${QALIGN_ASSETS}
         ${_dev_mpi})
set_tests_properties(device_emu_e2e PROPERTIES LABELS "device;mpi;train;eval" TIMEOUT 600
  ENVIRONMENT "QALIGN_TEMPLATES=${CMAKE_SOURCE_DIR}/configs/templates;${QA_MPI_ENV};OPENBLAS_NUM_THREADS=1")
