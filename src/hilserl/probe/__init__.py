"""The encoder probe (`hilserl probe`): can a frozen backbone's features tell where the cube is?

`frames` renders gripper-camera frames with the cube at known positions (or reads a folder of real images with
their positions), `features` runs each backbone and keeps the maps of a few layers, `measures` fits a
cross-validated ridge probe and summarises cosine similarities, `report` puts them together as a table and JSON.
"""
