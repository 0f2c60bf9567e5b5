# The installed qalign (tests/install_check.sh): cmake --install into a temporary prefix, the demo's
# steps from outside the repository, and the .deb unpacked with dpkg-deb. Needs the assets (77 otherwise).
if(NOT QALIGN_ASAN)  # one install check, on the release build
add_test(NAME install_prefix COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/install_check.sh ${CMAKE_BINARY_DIR} ${QALIGN_ASSETS})
set_tests_properties(install_prefix PROPERTIES LABELS "install" TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endif()
