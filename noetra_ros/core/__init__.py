"""ROS-free core: plain Python / numpy / PyBullet. Nothing under here imports rclpy."""
