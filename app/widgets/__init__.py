"""Small reusable widgets: spin boxes, plots, the error banner, the drawing dialog."""
