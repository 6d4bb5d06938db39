"""The book's text pages come from the README and docs/ at build time; the "Reproduced vs paper" page
reads the recorded run and kdlab.recipes."""
import json

import pytest

from kdlab import recipes
from kdlab.book import pages, reproduced
from kdlab.errors import KdlabError


def test_the_readme_and_every_docs_page_are_staged_and_the_section_pages_are_cut_from_the_readme():
    staged = pages.text_pages()
    assert {"README.md", "index.md", "docs/data.md", "docs/assignments.md", "docs/sweeps.md", "docs/design.md",
            "book/setup.md", "book/profiles.md", "book/bad-inputs.md"} <= set(staged)
    assert any(name.startswith("docs/notes/") for name in staged)
    readme = staged["README.md"]
    sections = pages.readme_sections(readme)
    assert sections["Bad input"] in staged["book/bad-inputs.md"]
    assert sections["Run profiles"] in staged["book/profiles.md"]
    assert sections["Two commands"] in staged["book/setup.md"]


def test_a_missing_readme_section_stops_the_build_with_its_name():
    with pytest.raises(KdlabError, match="no section 'Run profiles'"):
        pages.section_page("Run profiles", ("Run profiles",), {})


def test_headings_inside_code_blocks_are_not_sections():
    text = "## A\ntext\n```\n## not a heading\n```\n## B\nmore"
    assert list(pages.readme_sections(text)) == ["A", "B"]


def test_reproduced_vs_paper_lists_every_notebook_with_the_recorded_and_the_papers_numbers():
    recorded = json.loads(reproduced.RECORDED.read_text())["notebooks"]
    text = reproduced.render({"01_knowledge_distillation": {"status": "ok", "seconds": 20, "results": {}}}, "smoke")
    module = reproduced._templates()
    for stem, (settings, _) in reproduced.PAPERS.items():  # (a notebook not in PAPERS gets a line that says so)
        assert f"../notebooks/{stem}.ipynb" in text
        assert reproduced.kit_statement(stem, recorded.get(stem), module) in text
        for name in settings:
            assert f"**{recipes.get(name).paper_number}" in text
    assert "+3.87 [95% CI +2.11, +5.62]" in text  # notebook 01's recorded KD - CE, as in the README
    assert "98.7 ± 0.4" in text                   # MAML, Omniglot 5-way 1-shot (Table 1)
    assert "key numbers not recorded in this run" in text  # a run without the numbers says so
