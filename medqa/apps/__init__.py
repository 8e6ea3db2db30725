"""Using a trained model (use floor): batched generation (`predict`), the Gradio chat (`serve`), merging an adapter
(`merge`) and the safety checks' measured table (`safety_eval`). They read a run's outputs, never a trainer's code."""
