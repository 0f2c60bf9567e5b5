# dist/: real multi-process runs under mpirun (label mpi). As root in containers Open MPI needs
# --allow-run-as-root, and more ranks than cores need --oversubscribe (docs/hpc.md §2).
qa_test_exe(test_dist SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dist.c LIBS qa_dist qa_common)
qa_test_exe(test_dist_fail SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_fail.c LIBS qa_common)

# The launcher, its flags and environment: QA_MPIEXEC, QA_MPIRUN, QA_MPI_ENV (tests/CMakeLists.txt).
if(QA_MPIEXEC)
  foreach(np 1 2 4)
    add_test(NAME dist_check_np${np}
             COMMAND ${QA_MPIRUN} ${np} $<TARGET_FILE:test_dist> check)
    set_tests_properties(dist_check_np${np} PROPERTIES LABELS "mpi" TIMEOUT 60 ENVIRONMENT "${QA_MPI_ENV}")
  endforeach()
  # no launcher at all: MPI singleton, one rank
  add_test(NAME dist_check_singleton COMMAND $<TARGET_FILE:test_dist> check)
  set_tests_properties(dist_check_singleton PROPERTIES LABELS "mpi" TIMEOUT 60 ENVIRONMENT "${QA_MPI_ENV}")

  foreach(c abort kill exit stall freeze stop)
    add_test(NAME dist_fail_${c} COMMAND $<TARGET_FILE:test_dist_fail> ${c} 4)
    set_tests_properties(dist_fail_${c} PROPERTIES LABELS "mpi" TIMEOUT 90
      ENVIRONMENT "${QA_MPI_ENV};QA_MPIRUN=${QA_MPIRUN_STR};QA_DIST_WORKER=$<TARGET_FILE:test_dist>;QALIGN_DIST_PROBE_S=2")
  endforeach()
endif()

# the nccl backend: CUDA builds with NCCL only; needs GPUs (label gpu, never in the CPU suite)
if(QALIGN_HAVE_CUDA AND QA_NCCL_LIB AND QA_NCCL_INCLUDE AND QA_MPIEXEC)
  qa_test_exe(test_dist_nccl SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_nccl.c LIBS qa_dist qa_common)
  # exits 77 (ctest: skipped) on a machine without a GPU, e.g. CI; mpirun passes the code through
  add_test(NAME dist_nccl_np1 COMMAND ${QA_MPIRUN} 1 $<TARGET_FILE:test_dist_nccl>)
  set_tests_properties(dist_nccl_np1 PROPERTIES LABELS "gpu" TIMEOUT 120 SKIP_RETURN_CODE 77
    ENVIRONMENT "${QA_MPI_ENV};QALIGN_NCCL_FORCE_COLLECTIVES=1")
endif()

# slurm/ templates: syntax, and the SIGUSR1 -> agreed stop -> requeue <array>_<task> path (fake scontrol)
add_test(NAME slurm_templates_syntax COMMAND bash -c
  "bash -n ${CMAKE_SOURCE_DIR}/slurm/train.sbatch && bash -n ${CMAKE_SOURCE_DIR}/slurm/sweep.sbatch && bash -n ${CMAKE_SOURCE_DIR}/slurm/eval.sbatch")
set_tests_properties(slurm_templates_syntax PROPERTIES LABELS "mpi;slurm" TIMEOUT 30)
if(QA_MPIEXEC)
  string(REPLACE ";" " " _pre "${QA_MPI_PREFLAGS}")
  add_test(NAME slurm_requeue COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm_requeue.sh
           ${CMAKE_SOURCE_DIR}/slurm/train.sbatch $<TARGET_FILE:test_dist> "${_pre}")
  set_tests_properties(slurm_requeue PROPERTIES LABELS "mpi;slurm" TIMEOUT 60 ENVIRONMENT "${QA_MPI_ENV}")
endif()
