"""Listwise distillation objectives: learn a teacher's scores or ranking over (query, [docs]) lists."""

from __future__ import annotations

from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor, nn

from st_distill.losses import functional as F
from st_distill.losses.base import ListScoringMixin, as_lists, pad_labels


class TeacherListLoss(ListScoringMixin, nn.Module):
    """Shared plumbing of the listwise distillation losses: validate, score, pad, then :meth:`compute`."""

    def __init__(self, model: CrossEncoder, mini_batch_size: int | None = None, cached: bool = False) -> None:
        super().__init__()
        self.init_scoring(model, mini_batch_size, cached)

    def compute(self, scores: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        """The loss on float32 ``[B, L]`` student logits, teacher scores and validity mask."""
        raise NotImplementedError

    def forward(
        self,
        inputs: list[list[str] | list[list[str]]],
        labels: list[Tensor],
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        """Score the (query, [docs]) lists and compare them with the teacher scores in ``labels``.

        Raises:
            ValueError: On an empty doc list, a docs/scores length mismatch or a NaN teacher score.
        """
        name = type(self).__name__
        queries, docs_lists = as_lists(inputs, name)
        teacher = pad_labels(labels, [len(docs) for docs in docs_lists], name, self.model.device)
        return self.score_and_compute(
            queries, docs_lists, lambda scores, mask: self.compute(scores, teacher, mask), prompt=prompt, task=task
        )


class DistillRankNetLoss(TeacherListLoss):
    def __init__(self, model: CrossEncoder, mini_batch_size: int | None = None, cached: bool = False) -> None:
        r"""
        RankNet distillation: for every pair of documents that the teacher orders (:math:`t_i > t_j`),
        :math:`-\log \sigma(s_i - s_j)`, averaged uniformly over all such pairs of the batch. Ties in
        the teacher scores give no pair, so pseudo-scores from an LLM ranking (descending with the
        rank) and raw teacher logits both work.

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.

        References:
            - Learning to Rank using Gradient Descent: https://icml.cc/Conferences/2015/wp-content/uploads/2015/06/icml_ranking.pdf
            - Rank-DistiLLM: https://huggingface.co/papers/2405.07920
            - Reproducing and Comparing Distillation Techniques for Cross-Encoders: https://arxiv.org/abs/2603.03010

        Requirements:
            1. Query with a list of documents (the study: RankZephyr's ordering of the first-stage top-50).
            2. One teacher score per document, higher = better; only the order matters.

        Inputs:
            +----------------------------------------+--------------------------------+-------------------------------+
            | Inputs                                 | Labels                         | Number of Model Output Labels |
            +========================================+================================+===============================+
            | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
            +----------------------------------------+--------------------------------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.RankNetLoss` with
              ``reduction_log="natural"`` computes the same value (tested): it also averages over all
              ordered pairs of the batch and drops ties. Its default ``reduction_log="binary"`` divides
              by ``ln 2``. This loss computes :math:`\mathrm{softplus}(s_j - s_i)` directly on the
              pairs instead of sorting and clamping, and never builds the NDCG gain matrices.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import DistillRankNetLoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "docs": [["Pandas are a kind of bear.", "Pandas eat bamboo.", "Pandas are kind of like fish."]],
                    "scores": [[3.0, 2.0, 1.0]],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=DistillRankNetLoss(model))
                trainer.train()
        """
        super().__init__(model, mini_batch_size, cached)

    def compute(self, scores: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        return F.distill_ranknet(scores, teacher, mask)

    def get_config_dict(self) -> dict[str, int | bool | None]:
        return {"mini_batch_size": self.mini_batch_size, "cached": self.cached}

    @property
    def citation(self) -> str:
        return """
@inproceedings{burges2005learning,
    title={Learning to Rank using Gradient Descent},
    author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole and Hullender, Greg},
    booktitle={Proceedings of the 22nd International Conference on Machine Learning},
    pages={89--96},
    year={2005},
}
"""


class ADRMSELoss(TeacherListLoss):
    def __init__(
        self,
        model: CrossEncoder,
        temperature: float = 1.0,
        discount: str | None = "log2",
        mini_batch_size: int | None = None,
        cached: bool = False,
    ) -> None:
        r"""
        ADR-MSE (Approx Discounted Rank MSE): the student's differentiable rank of each document,
        :math:`\hat{r}_i = 1 + \sum_{j \neq i} \sigma((s_j - s_i) / T)`, is pulled to the teacher's
        rank :math:`r_i` (1 = best) with the squared error weighted by :math:`w(r_i)`:
        :math:`\mathcal{L} = \mathrm{mean}_i\, w(r_i) (\hat{r}_i - r_i)^2` over all documents of the batch.

        Tied teacher scores share their average rank (as in the library), so the target is
        reachable when the student scores tied documents equally.

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            temperature (float): ``T`` in the rank approximation; smaller is closer to the hard rank
                but gives weaker gradients to well-separated pairs. Defaults to 1.0 (the study).
            discount (str, optional): The weight ``w(r)``: ``"log2"`` for :math:`1/\log_2(r+1)`
                (the study), ``"reciprocal"`` for :math:`1/r`, or ``None`` for no discount.
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.

        References:
            - Rank-DistiLLM: Closing the Effectiveness Gap Between Cross-Encoders and LLMs for Passage Re-Ranking: https://huggingface.co/papers/2405.07920
            - Reproducing and Comparing Distillation Techniques for Cross-Encoders: https://arxiv.org/abs/2603.03010

        Requirements:
            1. Query with a list of documents (the study: RankZephyr's ordering of the first-stage top-50).
            2. One teacher score per document, higher = better; only the order matters.

        Inputs:
            +----------------------------------------+--------------------------------+-------------------------------+
            | Inputs                                 | Labels                         | Number of Model Output Labels |
            +========================================+================================+===============================+
            | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
            +----------------------------------------+--------------------------------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.ADRMSELoss` is this loss with
              ``discount="log2"`` and ``alpha = 1 / temperature`` (tested equal, ties included). This
              one adds the ``"reciprocal"`` and ``None`` discounts and names the sharpness as a
              temperature.
            - :class:`DistillRankNetLoss` takes the same inputs and optimises the pairwise order instead of rank positions.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import ADRMSELoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "docs": [["Pandas are a kind of bear.", "Pandas eat bamboo.", "Pandas are kind of like fish."]],
                    "scores": [[3.0, 2.0, 1.0]],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=ADRMSELoss(model))
                trainer.train()
        """
        if discount not in F.DISCOUNTS:
            raise ValueError(f"discount must be one of {F.DISCOUNTS}, got {discount!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(model, mini_batch_size, cached)
        self.temperature = temperature
        self.discount = discount

    def compute(self, scores: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        return F.adr_mse(scores, teacher, mask, temperature=self.temperature, discount=self.discount)

    def get_config_dict(self) -> dict[str, float | int | str | bool | None]:
        return {
            "temperature": self.temperature,
            "discount": self.discount,
            "mini_batch_size": self.mini_batch_size,
            "cached": self.cached,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{schlatt2025rankdistillm,
    title={Rank-DistiLLM: Closing the Effectiveness Gap Between Cross-Encoders and LLMs for Passage Re-ranking},
    author={Schlatt, Ferdinand and Fr{\\"o}be, Maik and Scells, Harrisen and Zhuang, Shengyao and Koopman, Bevan and Zuccon, Guido and Stein, Benno and Potthast, Martin and Hagen, Matthias},
    booktitle={Advances in Information Retrieval (ECIR 2025)},
    year={2025},
    doi={10.1007/978-3-031-88714-7_31},
}
"""


class KLDistillLoss(TeacherListLoss):
    def __init__(
        self, model: CrossEncoder, temperature: float = 1.0, mini_batch_size: int | None = None, cached: bool = False
    ) -> None:
        r"""
        Listwise KL distillation with a temperature:
        :math:`\mathcal{L} = T^2 \cdot \mathrm{KL}(\mathrm{softmax}(t / T) \,\|\, \mathrm{softmax}(s / T))`
        per query, averaged over queries. The :math:`T^2` factor keeps gradient magnitudes
        comparable across temperatures.

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            temperature (float): Softmax temperature ``T`` applied to teacher and student. Defaults to 1.0.
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.

        References:
            - Distilling the Knowledge in a Neural Network: https://arxiv.org/abs/1503.02531

        Requirements:
            1. Query with a list of documents.
            2. One raw teacher logit per document (not a rank: the softmax uses score gaps).

        Inputs:
            +----------------------------------------+--------------------------------+-------------------------------+
            | Inputs                                 | Labels                         | Number of Model Output Labels |
            +========================================+================================+===============================+
            | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
            +----------------------------------------+--------------------------------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.ListNetLoss` is the cross-entropy
              against ``softmax(t)``: at ``T = 1`` it equals this loss plus the teacher's entropy (a
              constant), so the gradients match (tested). This loss adds the temperature and reports
              a KL that is 0 at a perfect student.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import KLDistillLoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "docs": [["Pandas are a kind of bear.", "Pandas eat bamboo.", "Pandas are kind of like fish."]],
                    "scores": [[7.5, 3.1, -4.2]],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=KLDistillLoss(model, temperature=2.0))
                trainer.train()
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(model, mini_batch_size, cached)
        self.temperature = temperature

    def compute(self, scores: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        return F.kl_distill(scores, teacher, mask, temperature=self.temperature)

    def get_config_dict(self) -> dict[str, float | int | bool | None]:
        return {"temperature": self.temperature, "mini_batch_size": self.mini_batch_size, "cached": self.cached}

    @property
    def citation(self) -> str:
        return """
@article{hinton2015distilling,
    title={Distilling the Knowledge in a Neural Network},
    author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
    journal={arXiv preprint arXiv:1503.02531},
    year={2015},
}
"""
