"""Check histories, save results, draw plots and render reports."""
