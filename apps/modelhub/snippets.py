"""“Use it via the API”: curl and Python snippets for an endpoint, filled with the text on screen.

The token is never put in a page: the snippets read it from the SAMPLESCOPE_TOKEN environment
variable (create one at /accounts/tokens/).
"""

from __future__ import annotations

import json

TOKEN_VARIABLE = "SAMPLESCOPE_TOKEN"


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def api_snippets(*, url: str, payload: dict) -> dict[str, str]:
    """{"curl": …, "python": …} POSTing `payload` as JSON to the absolute `url` with a Bearer token."""
    body = json.dumps(payload, ensure_ascii=False)
    curl = (
        f"curl -s -X POST {_shell_quote(url)} \\\n"
        f'  -H "Authorization: Bearer ${TOKEN_VARIABLE}" \\\n'
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {_shell_quote(body)}"
    )
    python = (
        "import os\n\nimport requests\n\n"
        "response = requests.post(\n"
        f"    {url!r},\n"
        f'    headers={{"Authorization": f"Bearer {{os.environ[{TOKEN_VARIABLE!r}]}}"}},\n'
        f"    json={json.dumps(payload, ensure_ascii=False)},\n"
        "    timeout=30,\n"
        ")\n"
        "response.raise_for_status()\n"
        "print(response.json())"
    )
    return {"curl": curl, "python": python}
