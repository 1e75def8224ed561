# Used only when a message package is built by pip (scikit-build-core) into a virtual environment that holds
# the ROS 2 PyPI wheels instead of a sourced ROS install. colcon builds on the robot never include this file.
#
# 1. The wheels install an ordinary ROS prefix at the venv root: point CMake and ament at it, or rosidl finds
#    no typesupport.
# 2. The wheels' exported `*__rosidl_generator_py` targets carry include paths of the machine that built them
#    (/opt/python/...); call `ros_wheels_drop_foreign_includes()` at the end of the CMakeLists, once every
#    dependency's targets are imported (rosidl_generate_interfaces imports some itself).

find_package(Python3 REQUIRED COMPONENTS Interpreter)
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c "import ament_package, sys; print(sys.prefix)"
  OUTPUT_VARIABLE ROS_WHEELS_PREFIX
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _ros_prefix_result)
if(NOT _ros_prefix_result EQUAL 0)
  message(FATAL_ERROR "ament_package is not importable by ${Python3_EXECUTABLE}: install the ROS 2 wheels first")
endif()
list(PREPEND CMAKE_PREFIX_PATH "${ROS_WHEELS_PREFIX}")
set(ENV{AMENT_PREFIX_PATH} "${ROS_WHEELS_PREFIX}")

function(ros_wheels_drop_foreign_includes)
  get_directory_property(imported IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs)
      list(FILTER dirs EXCLUDE REGEX "^/opt/python/")
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
    endif()
  endforeach()
endfunction()
