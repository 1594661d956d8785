"""Static files storage for production: WhiteNoise's compressed, hashed names, with the chat
script's ES module imports (static/chat/*.js) rewritten to the hashed names too.

Without the rewrite, `main.<hash>.js` would import `./state.js` by its plain name, which WhiteNoise
serves with a short cache lifetime and no version: after a deploy a browser could run new and old
modules together.
"""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ChatStaticFilesStorage(CompressedManifestStaticFilesStorage):
    # Django's own switch (off by default) for `import … from "./x.js"` in *.js files.
    support_js_module_import_aggregation = True
    # One pass settles one level of imports; the chat's longest chain is 8 imports deep
    # (main.js → frames.js → status.js → composer.js → render/transcript.js → render/message.js
    # → render/toolcalls.js → state.js → text.js), over Django's default of 5. Twice that leaves
    # room to grow.
    max_post_process_passes = 16
