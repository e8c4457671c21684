# tests/dist: sharded EMA. test_dist* run ranks as threads of one process;
# the MPI tests (mpi.cmake) run under mpirun when Open MPI was found.
file(GLOB EMA_DIST_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.c)
foreach(src ${EMA_DIST_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${CMAKE_CURRENT_LIST_DIR}/.. ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(${name} PRIVATE ema_static m Threads::Threads)
  target_compile_options(${name} PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
  target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "dist" TIMEOUT 120)
endforeach()

if(EMA_HAVE_MPI)
  add_executable(mpi_dist ${CMAKE_CURRENT_LIST_DIR}/mpi_dist.c)
  target_include_directories(mpi_dist PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(mpi_dist PRIVATE ema_mpi_static m)
  target_compile_options(mpi_dist PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
  add_test(NAME dist_mpi COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/mpi_check.sh $<TARGET_FILE:mpi_dist> ${MPIEXEC_EXECUTABLE})
  set_tests_properties(dist_mpi PROPERTIES LABELS "dist;mpi" TIMEOUT 300)
  if(NOT EMA_SANITIZE)
    add_test(NAME install_mpi_consumers
      COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_install_mpi.sh ${PROJECT_BINARY_DIR} ${CMAKE_C_COMPILER}
              ${CMAKE_COMMAND} ${MPIEXEC_EXECUTABLE})
    set_tests_properties(install_mpi_consumers PROPERTIES TIMEOUT 300 LABELS "dist;mpi;install;no-sanitize")
  endif()
endif()

add_executable(dist_fixture ${CMAKE_CURRENT_LIST_DIR}/dist_fixture.c)
target_include_directories(dist_fixture PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(dist_fixture PRIVATE ema_static m Threads::Threads)
target_compile_options(dist_fixture PRIVATE ${EMA_WARNINGS})
target_compile_definitions(dist_fixture PRIVATE _POSIX_C_SOURCE=200809L)
if(TARGET ema)
  add_test(NAME dist_consolidate_cli
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/consolidate_cli.sh $<TARGET_FILE:ema> $<TARGET_FILE:dist_fixture>)
  set_tests_properties(dist_consolidate_cli PROPERTIES LABELS "dist;tool" TIMEOUT 120)
endif()

find_program(EMA_DIST_VALGRIND valgrind)
if(EMA_DIST_VALGRIND AND NOT EMA_SANITIZE)
  add_test(NAME valgrind_test_dist
    COMMAND ${EMA_DIST_VALGRIND} -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
            $<TARGET_FILE:test_dist>)
  set_tests_properties(valgrind_test_dist PROPERTIES LABELS "dist;valgrind;no-sanitize" TIMEOUT 300)
endif()

# The same flow from Python over torch.distributed (4, 2 and 1 gloo processes);
# skipped (77) without /usr/bin/python3 and torch with gloo.
if(NOT EMA_SANITIZE AND EXISTS /usr/bin/python3)
  add_test(NAME dist_torch
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_torch_dist.py
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(dist_torch PROPERTIES
    ENVIRONMENT "EMA_LIBRARY=$<TARGET_FILE:ema_shared>;PYTHONPATH=${PROJECT_SOURCE_DIR}/python;PYTHONDONTWRITEBYTECODE=1"
    SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS "dist;python;no-sanitize")
endif()
