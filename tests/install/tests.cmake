# Install into a scratch prefix and build two consumers against it: one with
# pkg-config (libema.pc), one with CMake's find_package(ema).
if(NOT EMA_SANITIZE)
  add_test(NAME install_consumers
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_install.sh ${PROJECT_BINARY_DIR} ${CMAKE_C_COMPILER}
            ${CMAKE_COMMAND})
  set_tests_properties(install_consumers PROPERTIES TIMEOUT 300 LABELS "install;no-sanitize")
endif()
