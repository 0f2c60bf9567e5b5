# sweep/: grid files → cells → Slurm job arrays or local runs → one report (docs/sweeps.md).
#   sweep_plan        the tiny grid and the paper's SNLI grid planned (cells, groups, job scripts, memory
#                     estimates equal to the dry run's, GPU resources)
#   sweep_badinput    one message per bad grid entry / cell / run directory, exit 2, nothing written
#   sweep_local       submit --local: trained, evaluated, the report checked against results.json
#   eval_multi_adapter  several adapters on one load of the model, each as a separate run writes it
#   slurm_sweep       a real single-node Slurm (label slurm): submit, preempt + requeue + resume, scancel
#                     + resubmit, the report, --local byte-identical to the Slurm run
set(_sw_env "OMPI_ALLOW_RUN_AS_ROOT=1" "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" "OPENBLAS_NUM_THREADS=1" ${QA_MPI_ENV})
set(_sw_args $<TARGET_FILE:qalign> ${CMAKE_SOURCE_DIR} ${QALIGN_ASSETS})
add_test(NAME sweep_plan COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sweep_plan.sh ${_sw_args})
set_tests_properties(sweep_plan PROPERTIES LABELS "sweep" TIMEOUT 600 ENVIRONMENT "${_sw_env}")
add_test(NAME sweep_badinput COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sweep_badinput.sh ${_sw_args})
set_tests_properties(sweep_badinput PROPERTIES LABELS "sweep;badinput" TIMEOUT 300 ENVIRONMENT "${_sw_env}")
add_test(NAME sweep_local COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sweep_local.sh ${_sw_args})
set_tests_properties(sweep_local PROPERTIES LABELS "sweep" TIMEOUT 900 ENVIRONMENT "${_sw_env}")
if(QA_MPIEXEC)
  add_test(NAME eval_multi_adapter COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/eval_multi_adapter.sh ${_sw_args} "${QA_MPIRUN_STR}")
  set_tests_properties(eval_multi_adapter PROPERTIES LABELS "eval;sweep;mpi" TIMEOUT 300 ENVIRONMENT "${_sw_env}")
endif()
add_test(NAME slurm_sweep COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm_sweep.sh ${_sw_args})
set_tests_properties(slurm_sweep PROPERTIES LABELS "slurm" TIMEOUT 1800 SKIP_RETURN_CODE 77 ENVIRONMENT "${_sw_env}")
# a stop at a step whose checkpoint is committed writes no second one (a requeue on a checkpoint.every step)
add_test(NAME train_stop_checkpoint COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/train_stop_checkpoint.sh ${_sw_args})
set_tests_properties(train_stop_checkpoint PROPERTIES LABELS "train;sweep" TIMEOUT 120 ENVIRONMENT "${_sw_env}")
