# The v0 contract as an outside user sees it: only the public header, linked
# against the shared library; and the header compiled as C++.
add_executable(test_contract ${CMAKE_CURRENT_LIST_DIR}/test_contract.c)
target_link_libraries(test_contract PRIVATE ema_shared)
target_compile_options(test_contract PRIVATE ${EMA_WARNINGS} -pedantic)
add_test(NAME test_contract COMMAND test_contract)

include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
  add_executable(test_header_cxx ${CMAKE_CURRENT_LIST_DIR}/header_cxx.cpp)
  target_link_libraries(test_header_cxx PRIVATE ema_shared)
  target_compile_options(test_header_cxx PRIVATE -Wall -Wextra -Werror -pedantic)
  add_test(NAME test_header_cxx COMMAND test_header_cxx)
endif()
