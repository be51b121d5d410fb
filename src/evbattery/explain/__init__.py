"""Attribution: Grad-CAM heatmaps and how much of them falls on the cell."""
