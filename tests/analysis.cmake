# analysis/ (`qalign lens`, `qalign pca`), activation dumps (io/actdump.c, `qalign eval --dump-activations`).
#   analysis_models       (setup) tiny random Qwen2 models (2 layers x 64, 3 layers x 64, 2 layers x 32) with the real
#                         tokenizer and a random q/v LoRA adapter, in the build dir
#   analysis_lens_golden  the lens of every fixture model through a dump and analysis/ vs golden logit_lens.* (1e-4)
#   analysis_dump         eval/ dumps vs one-by-one plain forwards (last position, mean over positions, all layers,
#                         base and adapter), items, labels; the PCA fit vs the covariance's eigen-equation
#   analysis_cli          qalign eval --dump-activations (1 and 2 ranks: identical), qalign lens and qalign pca:
#                         CSV, HDF5, PNG and SVG
#   analysis_numpy        h5py reads the dump (names, shapes, attributes); PCA and Pearson vs NumPy's SVD
#   analysis_paper        the lens "energy" vs the paper's formula in NumPy (the tiny model, and a copy with a random
#                         final-norm weight); the PCA scatter by record-index bucket
#   analysis_badinput     dumps of another model (layers, width), missing datasets / attributes, not a dump,
#                         usage errors: clear messages naming the file and the object
set(QA_AN_DATA "${QALIGN_ASSETS}/paper-data")
set(QA_AN_TOK "${QALIGN_ASSETS}/tokenizers/qwen1_5-qwen2.tokenizer.json")
set(QA_AN_TMP "${CMAKE_CURRENT_BINARY_DIR}/analysis_tmp")

qa_test_exe(test_analysis SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_analysis.c
            LIBS qa_analysis qa_eval qa_model qa_io qa_dist m)

add_test(NAME analysis_models COMMAND sh -c
  "set -e; mkdir -p '${QA_AN_TMP}'; Q='$<TARGET_FILE:qalign>'; \
   \"$Q\" init-model --arch qwen2 --tokenizer '${QA_AN_TOK}' --seed 3 --force --out '${QA_AN_TMP}/tiny' >/dev/null; \
   \"$Q\" init-model --arch qwen2 --tokenizer '${QA_AN_TOK}' --seed 3 --layers 3 --force --out '${QA_AN_TMP}/tiny-l3' >/dev/null; \
   \"$Q\" init-model --arch qwen2 --tokenizer '${QA_AN_TOK}' --seed 3 --hidden 32 --intermediate 86 --force \
     --out '${QA_AN_TMP}/tiny-d32' >/dev/null; \
   rm -rf '${QA_AN_TMP}/adapter'; '$<TARGET_FILE:test_analysis>' adapter '${QA_AN_TMP}/tiny' '${QA_AN_TMP}/adapter'")
set_tests_properties(analysis_models PROPERTIES LABELS "analysis" FIXTURES_SETUP analysis_models TIMEOUT 120)

add_test(NAME analysis_lens_golden COMMAND test_analysis golden ${QA_AN_TMP}/golden)
set_tests_properties(analysis_lens_golden PROPERTIES LABELS "golden;analysis"
  ENVIRONMENT "QALIGN_FIXTURES_DEFAULT=${QA_FIXTURES_DEFAULT}/hf;OPENBLAS_NUM_THREADS=1")

add_test(NAME analysis_dump COMMAND test_analysis dump ${QA_AN_DATA} ${QA_AN_TMP}/tiny ${QA_AN_TMP}/adapter ${QA_AN_TMP})
set_tests_properties(analysis_dump PROPERTIES LABELS "analysis" TIMEOUT 120 FIXTURES_REQUIRED analysis_models
  ENVIRONMENT "OPENBLAS_NUM_THREADS=1")

# Open MPI (the eval commands) and fontconfig/pango (PLplot's cairo driver) keep caches until exit that LeakSanitizer
# reports: the command-line tests run without leak detection; test_analysis (the library, bad inputs) runs with it.
set(_anenv OPENBLAS_NUM_THREADS=1 ${QA_OMPI_ENV})
add_test(NAME analysis_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/analysis_cli.sh $<TARGET_FILE:qalign>
         $<TARGET_FILE:test_analysis> ${QA_AN_DATA} ${QA_AN_TMP} "${QA_MPIEXEC}")
set_tests_properties(analysis_cli PROPERTIES LABELS "analysis" TIMEOUT 300 FIXTURES_REQUIRED analysis_models
  FIXTURES_SETUP analysis_cli ENVIRONMENT "${_anenv};ASAN_OPTIONS=detect_leaks=0")

qa_python_test(analysis_numpy analysis_check.py ARGS ${QA_AN_TMP}/cli LABELS analysis TIMEOUT 120
               FIXTURES_REQUIRED analysis_cli)
qa_python_test(analysis_paper analysis_paper.py ARGS $<TARGET_FILE:qalign> ${QA_AN_TMP} LABELS analysis TIMEOUT 180
               FIXTURES_REQUIRED analysis_cli ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")

add_test(NAME analysis_badinput COMMAND sh -c
  "'$<TARGET_FILE:test_analysis>' badinput '${QA_AN_TMP}/cli/base.h5' '${QA_AN_TMP}/tiny' '${QA_AN_TMP}/tiny-l3' \
     '${QA_AN_TMP}/tiny-d32' '${QA_AN_TMP}/bad' && \
   ASAN_OPTIONS=detect_leaks=0 bash '${CMAKE_CURRENT_SOURCE_DIR}/analysis_cli.sh' '$<TARGET_FILE:qalign>' - \
     '${QA_AN_DATA}' '${QA_AN_TMP}' - badinput")
set_tests_properties(analysis_badinput PROPERTIES LABELS "analysis;badinput" TIMEOUT 120
  FIXTURES_REQUIRED "analysis_models;analysis_cli" ENVIRONMENT "${_anenv}")
