"""``gem demo``: a Gradio page for glass segmentation (optional extra ``.[demo]``).

:mod:`gemseg.demo.handlers` holds the framework-free work (read an upload, segment, views, downloads),
:mod:`gemseg.demo.models` the shared model cache, and :mod:`gemseg.demo.app` the Gradio page (imports gradio)::

    from gemseg.demo.app import create_app, launch_options
    create_app().launch(**launch_options())
"""
