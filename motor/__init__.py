"""Workflow engine for PSDT-05 / PSDT-07 on SpiffWorkflow. Never imports Flask."""
