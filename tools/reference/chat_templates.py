#!/usr/bin/env python3
"""Reference renderings of the chat-template fixtures, for tests/unit/chat_template_test.cc.

For every template x conversation of tests/data/chat_templates/conversations.json, renders the prompt as
transformers' `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` does and writes
tests/data/chat_templates/expected.json: the output string, or the error the template raised. The small
templates of constructs.json (one Jinja construct each, with their own variables) are rendered too, by the
compiled-template function of the same engine (transformers' _compile_jinja_template where it exists).

Engines, best first (`--engine auto` takes the first that imports; the one used is recorded in expected.json's
"generator" field, with its version):
  transformers  apply_chat_template itself, on a PreTrainedTokenizerFast wrapped around a one-token
                `tokenizers` model, with the fixture as chat_template and the fixture's bos/eos tokens set.
  jinja2        transformers' environment rebuilt here (see _transformers_environment): what
                transformers' _compile_jinja_template builds, for machines without transformers.

The final references come from the transformers engine (run it where transformers is installed, e.g. the GPU
machine: `python3 tools/reference/chat_templates.py --engine transformers`).
"""
import argparse
import json
import os
import sys
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "chat_templates")


def _transformers_environment():
    """jinja2 set up as transformers' _compile_jinja_template does (transformers 4.4x-5.x):
    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols]),
    its json.dumps-based tojson filter, raise_exception and strftime_now globals."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        # transformers' AssistantTracker: {% generation %}...{% endgeneration %} renders its body (the tracking
        # of assistant token indices is off unless return_assistant_tokens_mask is asked for).
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def jinja2_engine():
    import jinja2
    env = _transformers_environment()

    def render(template, messages, tools, bos, eos, add_generation_prompt):
        # apply_chat_template passes messages, tools, documents, add_generation_prompt and the tokenizer's
        # special_tokens_map (which leaves out unset tokens).
        kwargs = {"bos_token": bos, "eos_token": eos}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return env.from_string(template).render(messages=messages, tools=tools, documents=None,
                                                add_generation_prompt=add_generation_prompt, **kwargs)

    name = f"jinja2 {jinja2.__version__} with transformers' chat-template environment replicated " \
           f"(tools/reference/chat_templates.py _transformers_environment); not transformers itself"
    return name, render, env.from_string, jinja2.exceptions.TemplateError


def transformers_engine():
    import jinja2
    import transformers
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    def render(template, messages, tools, bos, eos, add_generation_prompt):
        backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]"))
        kwargs = {"bos_token": bos, "eos_token": eos}
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, **{k: v for k, v in kwargs.items() if v is not None})
        tok.chat_template = template
        out = tok.apply_chat_template(messages, tools=tools, tokenize=False,
                                      add_generation_prompt=add_generation_prompt)
        if not isinstance(out, str):
            raise RuntimeError(f"apply_chat_template(tokenize=False) returned {type(out).__name__}, not str")
        return out

    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template as compile_template
        compiled_by = "_compile_jinja_template"
    except ImportError:
        compile_template = _transformers_environment().from_string
        compiled_by = "the replicated environment (no _compile_jinja_template in this version)"
    name = f"transformers {transformers.__version__} apply_chat_template (jinja2 {jinja2.__version__}); " \
           f"constructs by {compiled_by}"
    return name, render, compile_template, jinja2.exceptions.TemplateError


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["auto", "transformers", "jinja2"], default="auto")
    ap.add_argument("--out", default=os.path.join(DATA, "expected.json"))
    args = ap.parse_args()

    engines = {"transformers": transformers_engine, "jinja2": jinja2_engine}
    order = ["transformers", "jinja2"] if args.engine == "auto" else [args.engine]
    for e in order:
        try:
            name, render, compile_template, template_error = engines[e]()
            break
        except ImportError as exc:
            if args.engine != "auto":
                sys.exit(f"engine {e} is not available: {exc}")
            print(f"engine {e} not available ({exc}); trying the next", file=sys.stderr)
    else:
        sys.exit("no engine available")

    def error_of(exc):
        # raise_exception raises the bare TemplateError; jinja's own failures are subclasses or other types.
        kind = "raise_exception" if type(exc) is template_error else type(exc).__name__
        return {"type": kind, "message": str(exc)}

    with open(os.path.join(DATA, "conversations.json"), encoding="utf-8") as f:
        spec = json.load(f)
    cases = []
    for t in spec["templates"]:
        with open(os.path.join(DATA, t["file"]), encoding="utf-8", newline="") as f:
            template = f.read()
        for conv in spec["conversations"]:
            agp = conv.get("add_generation_prompt", True)
            case = {"template": t["file"], "conversation": conv["name"], "add_generation_prompt": agp}
            try:
                case["output"] = render(template, conv["messages"], conv.get("tools"), t["bos_token"],
                                        t["eos_token"], agp)
            except Exception as exc:  # the template's own errors are part of the reference
                case["error"] = error_of(exc)
            cases.append(case)

    with open(os.path.join(DATA, "constructs.json"), encoding="utf-8") as f:
        construct_spec = json.load(f)
    constructs = []
    for c in construct_spec["constructs"]:
        case = {"name": c["name"]}
        try:
            case["output"] = compile_template(c["template"]).render(**c["context"])
        except Exception as exc:
            case["error"] = error_of(exc)
        constructs.append(case)

    out = {
        "comment": "Generated by tools/reference/chat_templates.py from conversations.json and the *.jinja "
                   "fixtures; do not edit by hand.",
        "generator": name,
        "cases": cases,
        "constructs": constructs,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in c for c in cases)
    print(f"{args.out}: {len(cases)} cases ({errors} errors), {len(constructs)} constructs by {name}")


if __name__ == "__main__":
    main()
