"""noetra_ros: run exported multimodal robot policies safely on ROS 2 robots."""
