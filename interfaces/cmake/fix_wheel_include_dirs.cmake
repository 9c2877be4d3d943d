# Make the PyPI (wheel) install of ROS 2 Jazzy usable for building interface packages.
#
# Why: the message wheels' exported CMake targets name the include folders of the machine the
# wheels were built on (/opt/python/cp311-cp311/include/python3.11 and
# /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include). CMake refuses an
# imported target whose include folder does not exist, so generating our packages fails.
# Rewriting those entries to this machine's Python and numpy folders, in our own build only, fixes
# it without root and without touching anything outside the build (recipe: the "Building your own
# interface package" section of /work/shared/reference/ros2-from-pypi.md).
# On a ROS 2 install from apt no target names /opt/python, so this changes nothing there.
function(noetra_fix_wheel_include_dirs)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
  get_directory_property(imported_targets IMPORTED_TARGETS)
  foreach(target IN LISTS imported_targets)
    get_target_property(include_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT include_dirs)
      continue()
    endif()
    set(fixed_dirs ${include_dirs})
    list(TRANSFORM fixed_dirs REPLACE
      "^/opt/python/[^/]+/include/python[0-9.]+$" "${Python3_INCLUDE_DIRS}")
    list(TRANSFORM fixed_dirs REPLACE
      "^/opt/python/[^/]+/lib/python[0-9.]+/site-packages/numpy/_core/include$"
      "${Python3_NumPy_INCLUDE_DIRS}")
    if(NOT "${fixed_dirs}" STREQUAL "${include_dirs}")
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${fixed_dirs}")
    endif()
  endforeach()
endfunction()
