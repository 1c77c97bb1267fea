"""Knowledge-neuron selection with one prompt per fact: generic neurons set aside, the threshold rule trims."""
import numpy as np

from analysis import knowledge_neurons as KN


def test_generic_neurons_are_set_aside_before_the_cap():
    attr_NLF = np.zeros((3, 2, 6), np.float32)
    attr_NLF[:, 1, 0] = 1.0  # a neuron every prompt attributes highly: generic
    attr_NLF[0, 0, 1], attr_NLF[0, 0, 2] = 0.9, 0.5
    attr_NLF[1, 1, 3] = 0.8
    attr_NLF[2, 0, 4], attr_NLF[2, 0, 5] = 0.3, 0.1  # 0.1 < 0.2 × max: not a coarse neuron
    generic = KN.generic_neurons(attr_NLF, ["born", "capital", "sport"], 0.2, min_relations=3)
    assert np.argwhere(generic).tolist() == [[1, 0]]
    assert not KN.generic_neurons(attr_NLF, ["born", "born", "sport"], 0.2, min_relations=3).any()
    found = KN.knowledge_neurons(attr_NLF, np.arange(3), 0.2, target=(1, 5), exclude_LF=generic)
    assert [f["neurons"] for f in found] == [[[0, 1], [0, 2]], [[1, 3]], [[0, 4]]]
    capped = KN.knowledge_neurons(attr_NLF, np.arange(3), 0.2, target=(1, 1), exclude_LF=generic)
    assert capped[0]["neurons"] == [[0, 1]] and capped[0]["threshold"] > 0.45  # 0.9 stays, 0.5 = 0.5 × max drops
